"""Host apps of the demo and the e2e tests: a TCP/UDP echo server of set CPU capacity and a load
generator that checks every byte it gets back."""
