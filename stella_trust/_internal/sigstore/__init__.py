"""Sigstore-native trust: trusted_root.json / signing config facts, exports, bundle verification."""
