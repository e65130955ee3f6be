-- Built-in renderer only (Quarto draws its own callouts): draw ::: {.callout-warning}
-- and ::: {.callout-note} blocks as shaded boxes in typst (PDF) output.
local colours = {
  ["callout-warning"] = { fill = "#fdf1ea", stroke = "#d55e00" },
  ["callout-note"] = { fill = "#eef4fa", stroke = "#0072b2" },
}

function Div(el)
  -- under Quarto (which defines the global `quarto`) its own callouts are used
  if quarto ~= nil or not FORMAT:match("typst") then
    return nil
  end
  for cls, c in pairs(colours) do
    if el.classes:includes(cls) then
      local open = pandoc.RawBlock("typst", string.format(
        '#block(fill: rgb("%s"), stroke: (left: 3pt + rgb("%s")), inset: 8pt, width: 100%%, radius: 2pt)[',
        c.fill, c.stroke))
      local close = pandoc.RawBlock("typst", "]")
      local blocks = { open }
      for _, b in ipairs(el.content) do
        table.insert(blocks, b)
      end
      table.insert(blocks, close)
      return blocks
    end
  end
  return nil
end
