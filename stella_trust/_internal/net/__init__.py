"""The one HTTP stack: the fetcher a sync, `init --root-sha256`, `doctor`, `snapshot export
--depth` and `trust repo pull --from URL` all use (timeouts, one deadline per request below
httpx, proxies from the environment, a CA bundle, identity encoding, size limits)."""
