import streamlit as st

st.set_page_config(page_title="Gradient Explosion Lab", layout="wide")
st.title("Gradient Explosion Lab")
