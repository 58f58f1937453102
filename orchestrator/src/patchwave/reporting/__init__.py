"""Workbooks for managers and auditors. The only importer of openpyxl."""
