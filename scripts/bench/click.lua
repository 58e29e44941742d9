-- wrk script: a landing-page click per request, each with its own session and email.
counter = 0
request = function()
  counter = counter + 1
  local id = math.random(1, 1000000000)
  local body = string.format(
    '{"session_id":"s-%d-%d","page_url":"https://www.lp.example.com.br/oferta?utm_source=facebook&utm_campaign=bf&fbclid=IwAR%d","email":"user%d@example.com","phone":"(11) 98765-%04d"}',
    id, counter, counter, id, counter % 10000)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
