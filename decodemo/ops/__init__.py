"""Shared numerical operations of the methods: tensors in, tensors out, no I/O and no weights."""
