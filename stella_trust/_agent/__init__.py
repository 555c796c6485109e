"""_agent"""
