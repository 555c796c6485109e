"""python-tuf at the edge: the only package that imports `tuf.ngclient`.

fetcher (httpx transport with deadlines), updater (Updater construction and target
downloads), errors (python-tuf failures in users' words), offline (re-verification on
`tuf.api.metadata` without network or wall clock), rollback (version floors).
"""
