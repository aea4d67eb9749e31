import CSluiceLinux

/// The process heap (glibc malloc), which keeps what is freed for reuse: after 10,000 streams
/// close, the ~25 MB they used stays resident until something asks for it back. See
/// `HeapTrimmer` in the gateway for when Sluice does.
public enum Heap {
    /// Bytes in free chunks across all arenas (resident or not: trimming returns pages, not
    /// chunks). Walks every arena's bins under its lock: call it seconds apart, not per request.
    public static var freeBytes: Int { Int(csluice_heap_free_bytes()) }

    /// Gives the free pages of every arena back to the system (malloc_trim): milliseconds for a
    /// heap of tens of MB, each arena locked while it is walked.
    public static func trim() { csluice_heap_trim() }
}
