/// Strict validation of any JSON text (RFC 8259), with the same rules and error offsets as
/// ``RequestScanner``: for bodies the gateway must check but does not otherwise read.
///
/// Contract: accepts exactly one JSON value of any type, surrounded by optional whitespace;
/// rejects everything ``RequestScanError/Syntax`` names. Allocates nothing.
public enum JSONValidator {
    public static func validate(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = 64) throws(RequestScanError) {
        var c = JSONCursor(bytes, maxDepth: maxDepth)
        try c.skipValue()
        try c.expectEnd()
    }
}
