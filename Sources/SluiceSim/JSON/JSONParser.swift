/// A strict recursive-descent JSON parser over bytes (UTF-8 validated in strings, surrogate
/// pairs joined, nesting limited so hostile bodies cannot exhaust the stack).
struct JSONParser {
    private let b: [UInt8]
    private var i = 0
    private var depth = 0
    private static let maxDepth = 512

    init(_ bytes: [UInt8]) { b = bytes }

    mutating func document() throws(JSONParseError) -> JSONValue {
        skipSpace()
        let v = try value()
        skipSpace()
        if i < b.count { throw JSONParseError(offset: i, message: "Extra data") }
        return v
    }

    private mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws(JSONParseError) -> JSONValue {
        guard i < b.count else { throw JSONParseError(offset: i, message: "Expecting value") }
        switch b[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw JSONParseError(offset: i, message: "Expecting value")
        }
    }

    private mutating func literal(_ word: StaticString, _ v: JSONValue) throws(JSONParseError) -> JSONValue {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { throw JSONParseError(offset: i, message: "Expecting value") }
        for k in 0..<n where b[i + k] != word.utf8Start[k] {
            throw JSONParseError(offset: i, message: "Expecting value")
        }
        i += n
        return v
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        if depth > Self.maxDepth { throw JSONParseError(offset: i, message: "Nesting too deep") }
    }

    private mutating func object() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var members: [(String, JSONValue)] = []
        skipSpace()
        if i < b.count && b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else {
                throw JSONParseError(offset: i, message: "Expecting property name enclosed in double quotes")
            }
            let key = try string()
            skipSpace()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw JSONParseError(offset: i, message: "Expecting ':' delimiter") }
            i += 1
            skipSpace()
            members.append((key, try value()))
            skipSpace()
            guard i < b.count else { throw JSONParseError(offset: i, message: "Expecting ',' delimiter") }
            if b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            guard b[i] == UInt8(ascii: ",") else { throw JSONParseError(offset: i, message: "Expecting ',' delimiter") }
            i += 1
        }
    }

    private mutating func array() throws(JSONParseError) -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var items: [JSONValue] = []
        skipSpace()
        if i < b.count && b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try value())
            skipSpace()
            guard i < b.count else { throw JSONParseError(offset: i, message: "Expecting ',' delimiter") }
            if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            guard b[i] == UInt8(ascii: ",") else { throw JSONParseError(offset: i, message: "Expecting ',' delimiter") }
            i += 1
        }
    }

    private mutating func number() throws(JSONParseError) -> JSONValue {
        let start = i
        func digits(_ i: inout Int, _ b: [UInt8]) -> Int {
            let s = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            return i - s
        }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count, b[i] >= 0x30, b[i] <= 0x39 else { throw JSONParseError(offset: start, message: "Expecting value") }
        if b[i] == 0x30 { i += 1 } else { _ = digits(&i, b) }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            if digits(&i, b) == 0 { throw JSONParseError(offset: i, message: "Expecting digit") }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            if digits(&i, b) == 0 { throw JSONParseError(offset: i, message: "Expecting digit") }
        }
        let text = String(decoding: b[start..<i], as: UTF8.self)
        guard let d = Double(text) else { throw JSONParseError(offset: start, message: "Expecting value") }
        return .number(d)
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard i + 4 <= b.count else { throw JSONParseError(offset: i, message: "Invalid \\uXXXX escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw JSONParseError(offset: i, message: "Invalid \\uXXXX escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func string() throws(JSONParseError) -> String {
        let start = i
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < b.count else { throw JSONParseError(offset: start, message: "Unterminated string starting at") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw JSONParseError(offset: i, message: "Invalid control character at") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < b.count else { throw JSONParseError(offset: start, message: "Unterminated string starting at") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00, i + 6 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if low >= 0xDC00 && low < 0xE000 {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        i = save
                    }
                }
                // Lone surrogates become U+FFFD (Python keeps them; Swift strings cannot).
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw JSONParseError(offset: i - 2, message: "Invalid \\escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else {
            throw JSONParseError(offset: start, message: "Invalid UTF-8 in string")
        }
        return s
    }
}
