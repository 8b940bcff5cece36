"""p4lb agent: samples a server's load and pushes LoadReports to the controller over ZeroMQ."""
