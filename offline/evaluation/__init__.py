"""Offline evaluation harness: metrics, protocol, reports and the ``evaluate`` job."""
