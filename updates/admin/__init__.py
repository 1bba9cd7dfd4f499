"""The admin: thin forms, lists and actions over the services in workflow.py, sending.py, ….

One module per area, so the file list reads as the admin's structure.
"""
