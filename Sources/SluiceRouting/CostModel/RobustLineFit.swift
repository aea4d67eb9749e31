/// Online fit of a line `y ≈ a + b·x` by recursive least squares (a Kalman filter on the two
/// coefficients), made for noisy latency samples: old samples fade with time, outliers are
/// clipped, the coefficients stay in bounds. Pure: time comes in as an argument.
///
/// With `θ = (a, b)`, covariance `P`, feature `φ = (1, x)`, residual scale `s`, nominal noise
/// `s₀` (the initial residual scale):
///
/// ```
/// forget:  P ← P · 2^(Δt / halfLife), capped at the prior P₀ (P never claims less than nothing known)
/// r      = y − θ·φ
/// σ      = √((1.5 s)² + φᵀ P φ)                  the spread expected of r: noise plus what θ is unsure of
/// r'     = clamp(r, −k·σ, k·σ)                   outliers count as k·σ at most (k = `clip`)
/// K      = P φ / (s₀² / w + φᵀ P φ)              w = the sample's weight (samples it averages)
/// θ      ← clamp(θ + K r', lower, upper)
/// P      ← P − K φᵀ P
/// s      ← s · 1.05 if |r| > s, else s / 1.05      tracks the median |r| (outliers move a median little);
///                                                 1.5 s ≈ the noise's standard deviation
/// ```
///
/// While the coefficients are unsure (the seeds, or after a pause) σ is wide and the fit
/// learns fast; once sure, a sample `k·σ` off moves it no more than one `k·σ` off would. A real
/// change (new hardware, a bigger batch) makes every residual large: `s` grows 5 % a sample
/// and forgetting widens `P` until the fit follows. The gain uses the nominal noise, not `s`: a
/// scale that grew with a change must not make the fit distrust the data that shows it.
public struct RobustLineFit: Sendable, Equatable {
    public private(set) var a: Double
    public private(set) var b: Double
    var p00: Double, p01: Double, p11: Double
    /// The prior's variances (P₀, diagonal): how far the seeds may be off.
    public let priorVarianceA: Double, priorVarianceB: Double
    public private(set) var residualScale: Double
    /// s₀: the noise the gain assumes.
    public let nominalNoise: Double
    public let lowerA: Double, upperA: Double, lowerB: Double, upperB: Double
    /// Seconds after which a sample weighs half.
    public var halfLife: Double
    /// Residuals beyond `clip × residualScale` are clipped.
    public var clip: Double
    public private(set) var lastUpdate: Double?
    public private(set) var samples = 0

    public init(a: Double, b: Double, sigmaA: Double, sigmaB: Double, residualScale: Double,
                boundsA: ClosedRange<Double>, boundsB: ClosedRange<Double>, halfLife: Double = 60, clip: Double = 2) {
        lowerA = boundsA.lowerBound; upperA = boundsA.upperBound
        lowerB = boundsB.lowerBound; upperB = boundsB.upperBound
        self.a = min(max(a, lowerA), upperA)
        self.b = min(max(b, lowerB), upperB)
        priorVarianceA = sigmaA * sigmaA
        priorVarianceB = sigmaB * sigmaB
        p00 = priorVarianceA; p01 = 0; p11 = priorVarianceB
        self.residualScale = max(residualScale, 1e-9)
        nominalNoise = max(residualScale, 1e-9)
        self.halfLife = halfLife
        self.clip = clip
    }

    public func predict(_ x: Double) -> Double { a + b * x }

    /// Takes one sample (`y` at `x`, averaging `weight` observations) at time `now` (seconds).
    /// Non-finite inputs and weights ≤ 0 are ignored.
    public mutating func observe(x: Double, y: Double, weight: Double = 1, at now: Double) {
        guard x.isFinite, y.isFinite, weight > 0, weight.isFinite, now.isFinite else { return }
        if let last = lastUpdate, halfLife > 0, now > last {
            let grow = Self.pow2((now - last) / halfLife)
            p00 *= grow; p01 *= grow; p11 *= grow
            // Capped at the prior: forgetting can make the fit as unsure as it started, not more.
            let cap = min(1, priorVarianceA / max(p00, .leastNonzeroMagnitude), priorVarianceB / max(p11, .leastNonzeroMagnitude))
            if cap < 1 { p00 *= cap; p01 *= cap; p11 *= cap }
        }
        lastUpdate = max(lastUpdate ?? now, now)
        let s = max(residualScale, 1e-9)
        let r = y - (a + b * x)
        // Pφ and φᵀPφ for φ = (1, x).
        let px0 = p00 + p01 * x, px1 = p01 + p11 * x
        let spread = max(px0 + px1 * x, 0)
        let bound = clip * (2.25 * s * s + spread).squareRoot()
        let rc = min(max(r, -bound), bound)
        let denominator = nominalNoise * nominalNoise / weight + spread
        if denominator > 0 && denominator.isFinite {
            let k0 = px0 / denominator, k1 = px1 / denominator
            a = min(max(a + k0 * rc, lowerA), upperA)
            b = min(max(b + k1 * rc, lowerB), upperB)
            // P ← P − K (Pφ)ᵀ, kept symmetric and non-negative on the diagonal.
            let n00 = p00 - k0 * px0, n01 = p01 - k0 * px1, n11 = p11 - k1 * px1
            p00 = max(n00, 0); p01 = n01; p11 = max(n11, 0)
        }
        residualScale = max(abs(r) > s ? s * 1.05 : s / 1.05, 1e-9)
        samples += 1
    }

    /// 2^x for x ≥ 0 without Foundation (x capped: beyond 64 half-lives everything is forgotten).
    static func pow2(_ x: Double) -> Double {
        let e = min(max(x, 0), 64)
        let whole = Int(e)
        var f = e - Double(whole)
        // 2^f = e^(f ln 2), f in [0, 1): a short Taylor series is exact to ~1e-10.
        f *= 0.693_147_180_559_945_3
        var term = 1.0, sum = 1.0
        for i in 1...12 {
            term *= f / Double(i)
            sum += term
        }
        return sum * Double(sign: .plus, exponent: whole, significand: 1)
    }
}
