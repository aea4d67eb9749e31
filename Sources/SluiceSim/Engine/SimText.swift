/// Deterministic pseudo-text: the simulator's "model". Token `i` of a completion is a
/// function of (seed, request key, i) only, so a prompt sent twice (to the same adapter, with
/// the same `seed` parameter) gets the same answer, as `temperature: 0` does on real vLLM.
/// The pieces look like the sub-word tokens a random tiny Llama produces (see
/// ../shared/vllm-reference/), and none needs JSON escaping except by accident of design.
public enum SimText {
    static let vocabulary: [String] = [
        " the", " of", " and", " to", " a", " in", " is", " that", " for", " it", " as", " with",
        " was", " on", " be", " at", " by", " this", " from", " or", " an", " are", " not", " but",
        " doesn", "FA", "ffset", "W", " cmd", " level", " methods", " defaults", "queue", "wise",
        "@", "at", "we", "self", " up", "opt", "=[", "item", " sy", "loat", " its", "ark", " model",
        " token", " cache", " prefix", " block", " route", " gateway", " server", " batch", " stream",
        "ing", "ed", "ly", "er", "tion", "s", ".", ",", " (", ")", ":", " -", " new", " data",
    ]

    /// The text of token `index` for a request whose key is `key`.
    public static func token(seed: UInt64, key: UInt64, index: Int) -> String {
        let r = SimRandom.mix(seed ^ SimRandom.mix(key &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15))
        return vocabulary[Int(r % UInt64(vocabulary.count))]
    }

    /// The whole completion of `count` tokens.
    public static func completion(seed: UInt64, key: UInt64, count: Int) -> String {
        var s = ""
        for i in 0..<count { s += token(seed: seed, key: key, index: i) }
        return s
    }
}
