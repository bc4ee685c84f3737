"""The runners: input checks before a model loads (preflight), the sweep into the store, the executors
(local, Ray), the shared session, and the commands steertax run, align, merge, compare and tax."""
