import Glibc
import SluiceIO

/// One operational log line on stderr: `2026-12-04T22:56:12.143Z sluice: message`. For events
/// operators act on (starts, reloads, adapter loads), never per request (that is the access
/// log) and never with secrets.
public func log(_ s: String) {
    let (sec, ns) = WallClock.now()
    var parts = tm()
    var t = time_t(sec)
    gmtime_r(&t, &parts)
    func pad(_ v: Int, _ width: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
    let stamp = pad(Int(parts.tm_year) + 1900, 4) + "-" + pad(Int(parts.tm_mon) + 1, 2) + "-" + pad(Int(parts.tm_mday), 2)
        + "T" + pad(Int(parts.tm_hour), 2) + ":" + pad(Int(parts.tm_min), 2) + ":" + pad(Int(parts.tm_sec), 2)
        + "." + pad(ns / 1_000_000, 3) + "Z"
    let line = Array("\(stamp) sluice: \(s)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
