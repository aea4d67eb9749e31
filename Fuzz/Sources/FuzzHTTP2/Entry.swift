import FuzzDriver
import Glibc

/// `SLUICE_FUZZ_WRITE_SEEDS=DIR FuzzHTTP2` writes the seed corpus (Corpus/http2) and exits.
@_cdecl("FuzzHTTP2_main")
func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    if let dir = getenv("SLUICE_FUZZ_WRITE_SEEDS") {
        return Seeds.write(to: String(cString: dir)) ? 0 : 1
    }
    // Swift's crash handler (on by default on Linux) takes the signal of a failed precondition
    // or a runtime fatal error (SIGILL, SIGABRT) before libFuzzer can (libFuzzer leaves a
    // signal alone when a handler is already installed), and its backtracer reads the other
    // threads' stacks, which AddressSanitizer reports as a stack-buffer-underflow in
    // memserver_read that hides the real message. The runtime reads SWIFT_BACKTRACE at
    // startup, so turn it off by starting again with it set (Fuzz/run sets it too).
    if getenv("SWIFT_BACKTRACE") == nil {
        setenv("SWIFT_BACKTRACE", "enable=no", 1)
        execv("/proc/self/exe", argv!)
    }
    Options.read(argc, argv)
    return runLibFuzzer(argc, argv) { data, size in fuzz(data, size) }
}

/// LeakSanitizer cannot see Swift's weak-reference side tables (the object's refcount word
/// holds the table's address shifted, with flag bits), so every weak reference would be a
/// reported leak (the upstream's HTTPResponder has one); the rest of the leak check stays on.
@_cdecl("__lsan_default_suppressions")
public func lsanDefaultSuppressions() -> UnsafePointer<CChar> {
    UnsafeRawPointer(("leak:formWeakReference\n" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}
