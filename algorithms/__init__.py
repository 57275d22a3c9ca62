"""acf.algorithms"""
