/// Audio uploads (`/v1/audio/transcriptions`, `/v1/audio/translations`): `multipart/form-data`.
extension RequestScanner {
    /// Reads the form fields the gateway routes and meters by from a complete multipart body:
    /// `model` (→ ``ScannedRequest/model``, raw bytes of the field, never escaped), `stream`
    /// (`true`/`false`, as the form encodes booleans) and `max_completion_tokens` (→
    /// ``ScannedRequest/maxTokens``, range-checked like JSON counts). The file part is skipped
    /// over, not copied. `closingBrace`, `memberCount` and segments are not used (no prompt text).
    /// To read the fields before the whole body has arrived, drive a ``MultipartScanner`` directly.
    ///
    /// Throws ``RequestScanError/Kind/malformedMultipart(_:)`` for a body that is not one
    /// (including a `Content-Type` that is not `multipart/form-data` with a boundary),
    /// `.wrongType`/`.notInRange` for the two typed fields.
    public func scanMultipart(_ body: UnsafeRawBufferPointer, contentType: UnsafeRawBufferPointer) throws(RequestScanError) -> ScannedRequest {
        guard var scanner = MultipartScanner(contentType: contentType) else {
            throw RequestScanError(offset: 0, kind: .malformedMultipart(.noBoundary))
        }
        var result = ScannedRequest()
        while true {
            switch scanner.next(body, isComplete: true) {
            case .part(let p):
                guard let name = p.name, p.filename == nil else { continue }
                let n = name.bytes(in: body)
                let v = p.value.bytes(in: body)
                if Bytes.equal(n, "model") {
                    result.model = p.value
                    result.hasModel = true
                    result.modelEscaped = false
                } else if Bytes.equal(n, "stream") {
                    if Bytes.equal(v, "true") || Bytes.equal(v, "True") || Bytes.equal(v, "1") { result.stream = true }
                    else if Bytes.equal(v, "false") || Bytes.equal(v, "False") || Bytes.equal(v, "0") { result.stream = false }
                    else { throw RequestScanError(offset: p.value.start, kind: .wrongType(.stream, expected: .boolean)) }
                } else if Bytes.equal(n, "max_completion_tokens") {
                    result.maxTokens = try Self.formCount(v, at: p.value.start)
                }
            case .end:
                return result
            case .needMore:
                throw RequestScanError(offset: body.count, kind: .malformedMultipart(.truncated))
            case .malformed(let e):
                throw RequestScanError(offset: body.count, kind: .malformedMultipart(e))
            }
        }
    }

    /// A decimal count in 1...``ScannedRequest/maxCount`` from a form field.
    static func formCount(_ v: UnsafeRawBufferPointer, at offset: Int) throws(RequestScanError) -> Int {
        guard v.count > 0, v.count <= 19 else {
            throw RequestScanError(offset: offset, kind: .wrongType(.maxCompletionTokens, expected: .integer))
        }
        var x = 0
        for b in v {
            guard SWAR.isDigit(b) else { throw RequestScanError(offset: offset, kind: .wrongType(.maxCompletionTokens, expected: .integer)) }
            let (m, o1) = x.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(b &- 48))
            x = o1 || o2 ? .max : a
        }
        guard x >= 1 && x <= ScannedRequest.maxCount else {
            throw RequestScanError(offset: offset, kind: .notInRange(.maxCompletionTokens, min: 1, max: Int64(ScannedRequest.maxCount)))
        }
        return x
    }
}
