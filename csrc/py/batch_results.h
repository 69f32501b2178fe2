// batch_results.h: the result list of the batch decoders (rans_decode_rows, rans_ctx_decode_rows):
// for each job its array, or a str naming that stream's problem.
#pragma once

#include <pybind11/pybind11.h>

#include <vector>

namespace golfpack {

template <class Job>
pybind11::list batch_results(const std::vector<Job>& jobs, const std::vector<pybind11::object>& arrays) {
  pybind11::list results;
  for (size_t k = 0; k < jobs.size(); ++k) {
    if (!jobs[k].error.empty())
      results.append(pybind11::str(jobs[k].error));
    else
      results.append(arrays[k]);
  }
  return results;
}

}  // namespace golfpack
