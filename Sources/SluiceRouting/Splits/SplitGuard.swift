/// What a split's SLO guard compares (`models[].guard`). Durations in nanoseconds.
public struct SplitGuardConfig: Sendable, Equatable {
    /// The arm the others are judged against (index into the split's arms; default the first).
    public var baseline = 0
    /// The trailing window the figures cover.
    public var windowNanos: UInt64 = 60_000_000_000
    /// How often the guard evaluates (a breach takes effect within one interval).
    public var intervalNanos: UInt64 = 5_000_000_000
    /// Requests an arm needs in the window before it is judged (each of baseline and
    /// candidate for the latency ratios; the candidate alone for the error rate).
    public var minRequests = 50
    /// A candidate breaches when its error rate exceeds the baseline's by more than this
    /// (absolute: 0.02 = two percentage points).
    public var errorRateMargin = 0.02
    /// A candidate breaches when its TTFT p90 exceeds the baseline's times this (nil: not checked).
    public var ttftP90Ratio: Double? = 1.5
    /// The same for the inter-token latency p90 (nil: not checked).
    public var interTokenP90Ratio: Double?
    /// Progressive ramp: the candidates' share of traffic in percent, one step per window
    /// that held (e.g. 1, 5, 25, 50); after the last step the configured weights apply.
    public var ramp: [Double] = []

    public init() {}
}

/// One arm's cumulative figures as the metrics count them (the guard takes differences).
public struct ArmCounts: Sendable, Equatable {
    /// Requests answered (any status; not those whose client left).
    public var requests: Double
    /// Of those, 5xx answers (the model server's, or Sluice's after an upstream failure).
    public var errors: Double
    /// Histogram counts per bucket (non-cumulative; the last is the +Inf bucket).
    public var ttft: [Double]
    public var interToken: [Double]

    public init(requests: Double = 0, errors: Double = 0, ttft: [Double] = [], interToken: [Double] = []) {
        self.requests = requests
        self.errors = errors
        self.ttft = ttft
        self.interToken = interToken
    }

    static func - (a: ArmCounts, b: ArmCounts) -> ArmCounts {
        func sub(_ x: [Double], _ y: [Double]) -> [Double] {
            x.indices.map { i in max(0, x[i] - (i < y.count ? y[i] : 0)) }
        }
        return ArmCounts(requests: max(0, a.requests - b.requests), errors: max(0, a.errors - b.errors),
                         ttft: sub(a.ttft, b.ttft), interToken: sub(a.interToken, b.interToken))
    }
}

/// An arm's figures over the guard's window (`/admin/splits`, the dashboard).
public struct ArmWindow: Sendable, Equatable {
    public var requests: Double = 0
    public var errors: Double = 0
    public var errorRate: Double { requests > 0 ? errors / requests : 0 }
    /// Nil without observations.
    public var ttftP90: Double?
    public var interTokenP90: Double?
    public var ttftCount: Double = 0
    public var interTokenCount: Double = 0
    public init() {}
}

/// Why a candidate was rolled back.
public struct Breach: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case errorRate = "error_rate", ttftP90 = "ttft_p90", interTokenP90 = "inter_token_p90"
    }
    public var kind: Kind
    public var candidate: Double
    public var baseline: Double
    /// The value the candidate's exceeded.
    public var limit: Double

    public var description: String {
        switch kind {
        case .errorRate:
            "error rate \(Self.fmt(candidate)) > baseline \(Self.fmt(baseline)) + margin = \(Self.fmt(limit))"
        case .ttftP90:
            "TTFT p90 \(Self.fmt(candidate))s > baseline \(Self.fmt(baseline))s x ratio = \(Self.fmt(limit))s"
        case .interTokenP90:
            "inter-token p90 \(Self.fmt(candidate))s > baseline \(Self.fmt(baseline))s x ratio = \(Self.fmt(limit))s"
        }
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 10000).rounded() / 10000
        return "\(r)"
    }
}

/// The SLO guard of one weighted split: it watches each candidate arm against the baseline over
/// a trailing window and takes a candidate's traffic away (weight 0) when it is worse, and can
/// ramp the candidates' share up step by step while they hold. Pure: the caller passes the
/// arms' cumulative counts and the time at each evaluation, and publishes ``weights``.
///
/// ```
///  per candidate:   active ──breach──▶ rolledBack(why) ──reset──▶ active
///  per split:       ramping(0) ──held a window──▶ ramping(1) … ──▶ steady (configured weights)
///                   (a reset starts the ramp again)
/// ```
/// Judged only with evidence: a candidate needs `minRequests` requests in the window (error
/// rate), and both arms need `minRequests` observations for a latency ratio. The baseline is
/// never rolled back. A breach is seen at the first evaluation after it is in the window, so
/// the arm loses its traffic within one interval.
public struct SplitGuard: Sendable {
    public enum ArmState: Sendable, Equatable {
        case baseline
        case active
        case rolledBack(Breach, atNanos: UInt64)

        public var name: String {
            switch self {
            case .baseline: "baseline"
            case .active: "active"
            case .rolledBack: "rolled_back"
            }
        }
    }

    /// What an evaluation changed (for the log and counters).
    public enum Event: Sendable, Equatable {
        case rolledBack(arm: Int, Breach)
        case rampAdvanced(step: Int, percent: Double)
        case rampCompleted
    }

    public let config: SplitGuardConfig
    /// The configured weights, by arm.
    public let configuredWeights: [Double]
    public let ttftBounds: [Double]
    public let interTokenBounds: [Double]
    public private(set) var states: [ArmState]
    /// The ramp step in force (nil: no ramp, or it completed).
    public private(set) var rampStep: Int?
    private var rampSince: UInt64
    /// The window's figures at the last evaluation, by arm.
    public private(set) var windows: [ArmWindow]
    public private(set) var lastEvaluation: UInt64?
    /// Samples of the cumulative counts, oldest first; the first is the window's base.
    private var samples: [(at: UInt64, counts: [ArmCounts])] = []

    /// `base`: the arms' cumulative counts now, if known (the window then starts here);
    /// without it the first evaluation's counts are the base.
    public init(config: SplitGuardConfig, weights: [Double], ttftBounds: [Double], interTokenBounds: [Double], now: UInt64,
                base: [ArmCounts]? = nil) {
        precondition(config.baseline >= 0 && config.baseline < weights.count, "baseline arm out of range")
        self.config = config
        configuredWeights = weights
        self.ttftBounds = ttftBounds
        self.interTokenBounds = interTokenBounds
        states = weights.indices.map { $0 == config.baseline ? .baseline : .active }
        rampStep = config.ramp.isEmpty ? nil : 0
        rampSince = now
        windows = Array(repeating: ArmWindow(), count: weights.count)
        if let base { samples = [(now, base)] }
    }

    /// Back to the start: every candidate active, the ramp at its first step, the window
    /// empty (what happened before the reset is not held against anyone).
    public mutating func reset(now: UInt64, base: [ArmCounts]? = nil) {
        states = configuredWeights.indices.map { $0 == config.baseline ? .baseline : .active }
        rampStep = config.ramp.isEmpty ? nil : 0
        rampSince = now
        samples.removeAll()
        if let base { samples = [(now, base)] }
        windows = Array(repeating: ArmWindow(), count: configuredWeights.count)
        lastEvaluation = nil
    }

    /// The weights to route by now: a rolled-back arm has 0; while ramping the candidates
    /// together have the step's percentage (shared in proportion to their configured weights)
    /// and the baseline the rest.
    public var weights: [Double] {
        var w = configuredWeights
        if let step = rampStep {
            let share = min(max(config.ramp[step] / 100, 0), 1)
            var candidates = 0.0
            for i in w.indices where i != config.baseline { candidates += configuredWeights[i] }
            for i in w.indices {
                if i == config.baseline { w[i] = 1 - share } else { w[i] = candidates > 0 ? share * configuredWeights[i] / candidates : 0 }
            }
        }
        for i in w.indices { if case .rolledBack = states[i] { w[i] = 0 } }
        return w
    }

    /// Whether `arm` was rolled back (its sticky users go to the baseline).
    public func isRolledBack(_ arm: Int) -> Bool {
        if case .rolledBack = states[arm] { return true }
        return false
    }

    /// Takes the arms' cumulative counts at `now` and judges the window ending now.
    public mutating func evaluate(now: UInt64, counts: [ArmCounts]) -> [Event] {
        precondition(counts.count == configuredWeights.count, "one count per arm")
        samples.append((now, counts))
        // Keep the newest sample at or before the window's start as the base.
        let start = now >= config.windowNanos ? now - config.windowNanos : 0
        while samples.count > 1 && samples[1].at <= start { samples.removeFirst() }
        let base = samples[0].counts
        lastEvaluation = now
        for i in counts.indices {
            let d = counts[i] - (i < base.count ? base[i] : ArmCounts())
            var w = ArmWindow()
            w.requests = d.requests
            w.errors = d.errors
            w.ttftCount = d.ttft.reduce(0, +)
            w.interTokenCount = d.interToken.reduce(0, +)
            w.ttftP90 = Self.quantile(0.9, d.ttft, ttftBounds)
            w.interTokenP90 = Self.quantile(0.9, d.interToken, interTokenBounds)
            windows[i] = w
        }
        var events: [Event] = []
        let b = windows[config.baseline]
        let minimum = Double(config.minRequests)
        var allHeld = true
        for i in windows.indices where i != config.baseline {
            guard case .active = states[i] else { continue }
            let c = windows[i]
            if let breach = judge(c, b, minimum) {
                states[i] = .rolledBack(breach, atNanos: now)
                events.append(.rolledBack(arm: i, breach))
                continue
            }
            if c.requests < minimum { allHeld = false }
        }
        // The ramp moves on when every remaining candidate held for a whole window at this
        // step with enough requests to judge; with none left it has nothing to ramp.
        if let step = rampStep {
            let remaining = states.contains { $0 == .active }
            if !remaining {
                rampStep = nil
            } else if allHeld && now - rampSince >= config.windowNanos {
                rampSince = now
                if step + 1 < config.ramp.count {
                    rampStep = step + 1
                    events.append(.rampAdvanced(step: step + 1, percent: config.ramp[step + 1]))
                } else {
                    rampStep = nil
                    events.append(.rampCompleted)
                }
                // The next step is judged on its own traffic.
                samples.removeAll()
                samples.append((now, counts))
            }
        }
        return events
    }

    private func judge(_ c: ArmWindow, _ b: ArmWindow, _ minimum: Double) -> Breach? {
        if c.requests >= minimum {
            let limit = b.errorRate + config.errorRateMargin
            if c.errorRate > limit { return Breach(kind: .errorRate, candidate: c.errorRate, baseline: b.errorRate, limit: limit) }
        }
        if let ratio = config.ttftP90Ratio, c.ttftCount >= minimum, b.ttftCount >= minimum,
           let cp = c.ttftP90, let bp = b.ttftP90, cp > bp * ratio {
            return Breach(kind: .ttftP90, candidate: cp, baseline: bp, limit: bp * ratio)
        }
        if let ratio = config.interTokenP90Ratio, c.interTokenCount >= minimum, b.interTokenCount >= minimum,
           let cp = c.interTokenP90, let bp = b.interTokenP90, cp > bp * ratio {
            return Breach(kind: .interTokenP90, candidate: cp, baseline: bp, limit: bp * ratio)
        }
        return nil
    }

    /// The `q` quantile of a histogram (non-cumulative `counts`, the last the +Inf bucket) by
    /// linear interpolation within the bucket, as Prometheus's `histogram_quantile` does: the
    /// first bucket starts at 0, a quantile in the +Inf bucket is the highest bound. Nil when
    /// empty.
    public static func quantile(_ q: Double, _ counts: [Double], _ bounds: [Double]) -> Double? {
        let total = counts.reduce(0, +)
        guard total > 0, !bounds.isEmpty else { return nil }
        let rank = q * total
        var below = 0.0
        for (i, n) in counts.enumerated() {
            if below + n >= rank && n > 0 {
                guard i < bounds.count else { return bounds[bounds.count - 1] }
                let lower = i == 0 ? 0 : bounds[i - 1]
                return lower + (bounds[i] - lower) * ((rank - below) / n)
            }
            below += n
        }
        return bounds[bounds.count - 1]
    }
}
