"""topo/apps"""
