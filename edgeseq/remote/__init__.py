"""Profile on other devices over SSH (`--on ssh://user@host[:port]`): target.py reaches the device with
the system ssh client, install.py and wheels.py put this edgeseq there (runtime only, no registry
needed there), artifacts.py and copy.py copy each artifact once (resumable, verified), run.py runs
the profile there and brings the rows back, sweep.py spreads compare's points over several devices.
docs/remote.md says how to use it."""
