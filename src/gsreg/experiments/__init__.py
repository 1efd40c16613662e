"""Experiments of the paper, one module each: config -> run -> result folder."""
