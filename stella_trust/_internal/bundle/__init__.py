"""Air-gapped trust: the sealed archive format and its hostile-input reader (archive),
the shared TUF layout (layout), export and import."""
