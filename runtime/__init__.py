"""acf.runtime"""
