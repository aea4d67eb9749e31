import Glibc

/// Process signals, handled synchronously: the signals are blocked in every thread (call
/// ``block(_:)`` before starting any), and one thread waits for them with ``wait()``. No
/// async-signal-safety puzzles, and a signal can never interrupt a worker mid-request.
public enum Signals {
    public static let interrupt = SIGINT
    public static let terminate = SIGTERM
    public static let hangup = SIGHUP

    /// Blocks `signals` for the calling thread and every thread it starts afterwards. Also
    /// ignores SIGPIPE process-wide (writes use MSG_NOSIGNAL, but belt and braces).
    public static func block(_ signals: [Int32]) {
        signal(SIGPIPE, SIG_IGN)
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for one of `signals` (which must be blocked) and returns it.
    public static func wait(_ signals: [Int32]) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var sig: Int32 = 0
        while sigwait(&set, &sig) != 0 {}
        return sig
    }
}
