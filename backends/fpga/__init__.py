"""The built-in ``fpga`` backend: Intel DFL (OPAE) cards and AMD/Xilinx Alveo cards, programmed
on prepare from admin-allowed images. See docs/fpga.md."""
