"""Where on Earth: S2 cells, adaptive partitions of photo coordinates, their files and hierarchy."""
