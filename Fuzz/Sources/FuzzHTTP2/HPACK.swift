/// Just enough HPACK (RFC 7541) to write header blocks a server will decode: literal fields
/// (without indexing, with incremental indexing, never indexed), a name from the static table,
/// references into the dynamic table, and size updates. No Huffman: nghttp2 decodes it, and the
/// gateway only ever sees decoded fields.
struct HPACKWriter {
    enum Mode: UInt8 {
        /// 0000xxxx: not added to the dynamic table.
        case withoutIndexing = 0
        /// 01xxxxxx: added to the dynamic table (later fields may refer to it).
        case incremental = 1
        /// 0001xxxx: never indexed (sensitive).
        case neverIndexed = 2
        /// 1xxxxxxx: a reference to an existing dynamic-table entry (may be out of range).
        case indexedDynamic = 3
    }

    var bytes: [UInt8] = []

    /// HPACK integer with an N-bit prefix (RFC 7541 §5.1), `first` holding the pattern bits.
    mutating func integer(_ value: Int, prefixBits: Int, first: UInt8) {
        let max = (1 << prefixBits) - 1
        if value < max {
            bytes.append(first | UInt8(value))
            return
        }
        bytes.append(first | UInt8(max))
        var v = value - max
        while v >= 128 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func string(_ s: [UInt8]) {
        integer(s.count, prefixBits: 7, first: 0)
        bytes += s
    }

    /// A literal field with a new (literal) name.
    mutating func literal(_ name: [UInt8], _ value: [UInt8], mode: Mode) {
        switch mode {
        case .withoutIndexing: bytes.append(0x00)
        case .incremental: bytes.append(0x40)
        case .neverIndexed: bytes.append(0x10)
        case .indexedDynamic:
            // The first dynamic entry is index 62; pick one from the value's length so
            // that the same input keeps pointing at the same slot.
            integer(62 + value.count % 4, prefixBits: 7, first: 0x80)
            return
        }
        string(name)
        string(value)
    }

    /// A literal field whose name is static-table entry `index` (e.g. 2 = :method, 4 = :path).
    mutating func literal(staticName index: Int, _ value: [UInt8], mode: Mode) {
        switch mode {
        case .withoutIndexing, .indexedDynamic: integer(index, prefixBits: 4, first: 0x00)
        case .incremental: integer(index, prefixBits: 6, first: 0x40)
        case .neverIndexed: integer(index, prefixBits: 4, first: 0x10)
        }
        string(value)
    }

    /// A fully indexed static-table field (e.g. 0x82 = :method GET).
    mutating func indexed(_ index: Int) {
        integer(index, prefixBits: 7, first: 0x80)
    }

    /// A dynamic table size update (must come first in a block; above the limit is an error).
    mutating func sizeUpdate(_ size: Int) {
        integer(size, prefixBits: 5, first: 0x20)
    }
}
