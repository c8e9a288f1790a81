"""The Tencent Cloud CLB emulator: API 3.0 on the wire, async tasks, limits, health probes.

A stand-in: it never imports the controller packages, and the controller never imports it."""
