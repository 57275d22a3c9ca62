"""acf.compiler"""
