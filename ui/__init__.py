"""Streamlit glue shared by the pages: cached models and maps, photo inputs, sidebar."""
