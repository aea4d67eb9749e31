import Glibc
import CSluiceLinux

/// Watches one file for changes through inotify on its directory, on an event loop.
///
/// Watching the directory (not the file) is what makes it work with the ways config files are
/// replaced in practice: editors that write a new file and rename it over the old one, and the
/// Kubernetes ConfigMap volume, which swaps a `..data` symlink to a new timestamped directory.
/// Changes are debounced (several events from one save become one callback).
public final class FileWatcher: EventHandler {
    private let fd: Int32
    private unowned let loop: EventLoop
    private var registration: Registration?
    private let name: [UInt8]
    private let onChange: () -> Void
    private let debounce: Duration
    private var timer: Timer!

    /// Starts watching `path`; `onChange` runs on `loop` after a change settles.
    public init(path: String, loop: EventLoop, debounce: Duration = .milliseconds(100), onChange: @escaping () -> Void) throws(SyscallError) {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        name = Array((slash.map { String(path[path.index(after: $0)...]) } ?? path).utf8)
        self.loop = loop
        self.onChange = onChange
        self.debounce = debounce
        let ifd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if ifd < 0 { throw SyscallError("inotify_init1", errno: errno) }
        fd = ifd
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB)
        if inotify_add_watch(fd, dir.isEmpty ? "/" : dir, mask) < 0 {
            let e = errno
            Glibc.close(fd)
            throw SyscallError("inotify_add_watch", errno: e)
        }
        timer = Timer { [unowned self] in self.onChange() }
        do {
            registration = try loop.register(fd, events: EventLoop.Events.readable | EventLoop.Events.edgeTriggered, handler: self)
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    public func handleEvent(_ events: UInt32) {
        var buf = [UInt8](repeating: 0, count: 8192)
        var relevant = false
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            buf.withUnsafeBytes { raw in
                var off = 0
                // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[]; }
                while off + 16 <= n {
                    let len = Int(raw.load(fromByteOffset: off + 12, as: UInt32.self))
                    let nameBytes = raw[(off + 16)..<(off + 16 + len)].prefix { $0 != 0 }
                    // Our file, or the ConfigMap's `..data` symlink swap.
                    if nameBytes.elementsEqual(name) || nameBytes.elementsEqual("..data".utf8) { relevant = true }
                    off += 16 + len
                }
            }
        }
        if relevant { loop.schedule(timer, after: debounce) }
    }

    public func close() {
        if let r = registration {
            loop.deregister(r)
            registration = nil
            Glibc.close(fd)
        }
        if timer.isArmed { loop.cancel(timer) }
    }
}
