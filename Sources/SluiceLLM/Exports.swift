// Scanners return SluiceBase's `ByteRange`s: its clients see the type without importing it.
@_exported public import SluiceBase
