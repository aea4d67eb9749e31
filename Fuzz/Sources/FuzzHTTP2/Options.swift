import Glibc

/// How this process runs, from its arguments and environment (read once, in `main`).
enum Options {
    /// Milliseconds to wait after each input for the gateway's deferred work (deadlines, the
    /// 1 s linger after GOAWAY) so that a crash it causes lands in that input. 0 while fuzzing;
    /// 1500 when every argument is a file (libFuzzer runs them one by one: reproducing a
    /// crash); `SLUICE_FUZZ_SETTLE_MS` overrides both.
    nonisolated(unsafe) static var settleMs = 0
    /// `SLUICE_FUZZ_RECENT=DIR`: each input is also written to DIR/recent-NNN, a ring of the
    /// last 256 (half a second or more of fuzzing, past the 40 ms deadlines), so that the cause
    /// of a crash that came after its input is among them: `SLUICE_FUZZ_SETTLE_MS=100
    /// FuzzHTTP2 DIR/recent-*` then names it. Costs one small file write per input.
    nonisolated(unsafe) static var recentDir: String? = nil
    nonisolated(unsafe) private static var recentCount = 0

    static func read(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) {
        var files = 0, others = 0
        for i in 1..<Int(max(argc, 1)) {
            guard let a = argv?[i] else { continue }
            let arg = String(cString: a)
            if arg.hasPrefix("-") { continue }
            var st = stat()
            if stat(arg, &st) == 0 && st.st_mode & S_IFMT == S_IFREG { files += 1 } else { others += 1 }
        }
        if files > 0 && others == 0 {
            settleMs = 1500
            // A crash in the gateway's thread near the end would race libFuzzer's exit(0)
            // (the crash report is still being symbolized): give it time to end the process.
            atexit { usleep(2_000_000) }
        }
        if let v = getenv("SLUICE_FUZZ_SETTLE_MS"), let n = Int(String(cString: v)) { settleMs = n }
        if let d = getenv("SLUICE_FUZZ_RECENT"), settleMs == 0 {
            recentDir = String(cString: d)
            mkdir(recentDir!, 0o755)
        }
    }

    static func recordRecent(_ data: UnsafePointer<UInt8>, _ size: Int) {
        guard let dir = recentDir else { return }
        let n = recentCount % 256
        let path = dir + "/recent-" + (n < 10 ? "00" : n < 100 ? "0" : "") + String(n)
        recentCount += 1
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { return }
        _ = Glibc.write(fd, data, size)
        Glibc.close(fd)
    }
}
