package freeport

// EphemeralLowForTest exposes the range's top to the tests.
func EphemeralLowForTest() int { return top }
