"""controller/switch"""
