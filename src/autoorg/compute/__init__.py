"""Compute: GPU discovery and utilization (`gpu`), slots and their leases (`slots`)."""
