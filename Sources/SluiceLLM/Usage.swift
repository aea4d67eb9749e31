/// Token counts an OpenAI-compatible server reports in `usage`.
///
/// Contract: counts are as reported; a missing `total_tokens` is filled in as prompt + completion.
public struct Usage: Sendable, Equatable, Hashable {
    /// The largest count a scanner accepts (2^31 − 1: no model has a context that long, and
    /// sums of such counts cannot overflow).
    public static let maxCount = Int(Int32.max)

    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    /// Which counts a `usage` object reported (Anthropic streams report them in two events).
    public struct Fields: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let prompt = Fields(rawValue: 1)
        public static let completion = Fields(rawValue: 2)
        public static let total = Fields(rawValue: 4)
    }

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        // Saturating: counts come from outside (scanners bound them; this is the backstop).
        let (sum, overflow) = promptTokens.addingReportingOverflow(completionTokens)
        self.totalTokens = totalTokens ?? (overflow ? .max : sum)
    }
}

/// The usage of one answer, from every `usage` its events carry: each count a later event
/// reports replaces the earlier one (counts are cumulative in every dialect), counts it leaves
/// out are kept. Anthropic reports the input in `message_start` and the output in `message_delta`
/// (vLLM repeats the input there); OpenAI and the Responses API report everything once.
///
/// ```
/// var tally = UsageTally()
/// for each event: tally.add(event.payload)
/// settle with tally.usage (nil when no event had usage)
/// ```
public struct UsageTally: Sendable, Equatable {
    public private(set) var usage: Usage?
    var fields: Usage.Fields = []

    public init() {}

    public mutating func add(_ r: ScannedResponse) {
        guard let u = r.usage else { return }
        let f = r.usageFields
        let old = usage ?? Usage(promptTokens: 0, completionTokens: 0)
        let prompt = f.contains(.prompt) || !fields.contains(.prompt) ? u.promptTokens : old.promptTokens
        let completion = f.contains(.completion) || !fields.contains(.completion) ? u.completionTokens : old.completionTokens
        let total: Int? = f.contains(.total) && f.contains(.prompt) && f.contains(.completion) ? u.totalTokens : nil
        usage = Usage(promptTokens: prompt, completionTokens: completion, totalTokens: total)
        fields.formUnion(f)
    }
}
