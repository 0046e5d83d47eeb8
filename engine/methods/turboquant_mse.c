// methods/turboquant_mse.c — placeholder until the method lands.
#include "methods.h"
KVQ_METHOD_STUB(tq_mse, "turboquant_mse")
