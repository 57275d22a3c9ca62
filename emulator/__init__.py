"""acf.emulator"""
