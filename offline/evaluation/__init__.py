"""Offline evaluation harness (issue 4): metrics, protocol, reports and the ``evaluate`` job."""
