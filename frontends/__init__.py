"""acf.frontends"""
