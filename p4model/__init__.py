"""p4model"""
