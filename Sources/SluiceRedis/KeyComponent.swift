/// Escapes one component of a Redis key so components cannot run into each other: `:` (our
/// separator), `%`, glob characters (`*?[]`, so SCAN/KEYS patterns built from components match
/// literally), spaces and non-ASCII bytes become `%XX`. Without it tenant `a:b` of limit `x` and
/// tenant `b` of limit `x:a` would share a key.
enum KeyComponent {
    static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

    @inline(__always)
    static func isPlain(_ b: UInt8) -> Bool {
        (b >= 97 && b <= 122) || (b >= 65 && b <= 90) || (b >= 48 && b <= 57)
            || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: "@")
            || b == UInt8(ascii: "/")
    }

    static func append<S: Sequence<UInt8>>(_ bytes: S, to out: inout [UInt8]) {
        let hex = upperHex
        for b in bytes {
            if isPlain(b) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 15)])
            }
        }
    }
}
