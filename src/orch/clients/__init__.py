"""Typed clients of orch's services: the one place each service's query and update names are spelled."""
