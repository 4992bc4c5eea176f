"""Throwaway servers for the ``scaleout`` tests (loopback, free port, tmp dir)."""
