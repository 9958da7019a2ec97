"""Tests of the simulator: the API's rules, its HTTP surface, faults, and the official SDK."""
