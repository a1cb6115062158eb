// File: tessera/diagnostics/visualize.hpp
//
// Pictures of task graphs through graphviz: data as boxes, tasks as circles, arrows in the
// direction data flows (bottom to top by default, as in dask).
//
//   tessera::visualize(graph, "g.svg");                              // SVG (or .png, .pdf)
//   tessera::visualize(graph, "g.dot");                              // DOT only, no graphviz
//   needed std::string dot = tessera::to_dot(graph, {.rankdir = "LR", .color = "order"});
#pragma once

#include <string>

#include "tessera/core/graph.hpp"

namespace tessera {

struct VisualizeOptions {
  std::string rankdir = "BT";  // graphviz rank direction: BT, TB, LR or RL
  std::string color = {};      // "" (plain) or "order": tasks colored by static order
  std::string format = {};     // svg, png, pdf, dot…; empty: from the file extension
};

// The DOT text of `graph`.
std::string to_dot(const Graph& graph, const VisualizeOptions& options = {});
// Writes a picture of `graph` to `filename`; Error if graphviz's `dot` is missing or fails.
void visualize(const Graph& graph, const std::string& filename,
               const VisualizeOptions& options = {});

}  // namespace tessera
