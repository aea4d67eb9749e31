// Byte ranges are part of this module's API (heads are tables of them), so its clients see
// the one `ByteRange` (and SHA-256) of SluiceBase without importing it themselves.
@_exported public import SluiceBase
