import CYAML

/// A YAML document as a small tree whose nodes remember their line, built from libyaml's event
/// stream. Anchors and aliases are refused (a config file has no use for them and they make
/// "which line is wrong" ambiguous).
indirect enum YAMLNode {
    case scalar(String, line: Int, quoted: Bool)
    case sequence([YAMLNode], line: Int)
    case mapping([(key: String, keyLine: Int, value: YAMLNode)], line: Int)

    var line: Int {
        switch self {
        case .scalar(_, let l, _), .sequence(_, let l), .mapping(_, let l): l
        }
    }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    /// Parses `text`; an empty document is an empty mapping.
    static func parse(_ text: String) throws(ParseError) -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw ParseError(description: "cannot initialise the YAML parser") }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { (buf) throws(ParseError) -> YAMLNode in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            var stack: [Builder] = []
            var root: YAMLNode? = nil
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
                    throw ParseError(description: "YAML: \(problem) (line \(parser.problem_mark.line + 1))")
                }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                var finished: YAMLNode? = nil
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return root ?? .mapping([], line: 1)
                case YAML_ALIAS_EVENT:
                    throw ParseError(description: "YAML aliases are not supported (line \(line))")
                case YAML_SCALAR_EVENT:
                    if event.data.scalar.anchor != nil { throw ParseError(description: "YAML anchors are not supported (line \(line))") }
                    let s = String(decoding: UnsafeBufferPointer(start: event.data.scalar.value, count: event.data.scalar.length), as: UTF8.self)
                    finished = .scalar(s, line: line, quoted: event.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                case YAML_SEQUENCE_START_EVENT:
                    if event.data.sequence_start.anchor != nil { throw ParseError(description: "YAML anchors are not supported (line \(line))") }
                    stack.append(Builder(kind: .sequence, line: line))
                case YAML_MAPPING_START_EVENT:
                    if event.data.mapping_start.anchor != nil { throw ParseError(description: "YAML anchors are not supported (line \(line))") }
                    stack.append(Builder(kind: .mapping, line: line))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    finished = stack.removeLast().node()
                default:
                    break
                }
                if let node = finished {
                    if stack.isEmpty {
                        root = node
                    } else {
                        try stack[stack.count - 1].add(node)
                    }
                }
            }
        }
    }

    private struct Builder {
        enum Kind { case sequence, mapping }
        let kind: Kind
        let line: Int
        var items: [YAMLNode] = []
        var pairs: [(key: String, keyLine: Int, value: YAMLNode)] = []
        var pendingKey: (String, Int)? = nil

        init(kind: Kind, line: Int) {
            self.kind = kind
            self.line = line
        }

        mutating func add(_ n: YAMLNode) throws(ParseError) {
            switch kind {
            case .sequence:
                items.append(n)
            case .mapping:
                if let (k, l) = pendingKey {
                    if pairs.contains(where: { $0.key == k }) { throw ParseError(description: "duplicate key '\(k)' (line \(l))") }
                    pairs.append((k, l, n))
                    pendingKey = nil
                } else {
                    guard case .scalar(let k, let l, _) = n else { throw ParseError(description: "mapping keys must be plain strings (line \(n.line))") }
                    pendingKey = (k, l)
                }
            }
        }

        func node() -> YAMLNode {
            kind == .sequence ? .sequence(items, line: line) : .mapping(pairs, line: line)
        }
    }
}
