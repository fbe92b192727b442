"""Fake FPGA hardware for tests and demos: an executor that plays the card on a sample host."""
