"""The cloud port (typed values and a Protocol) and the Tencent CLB adapter."""
